"""``fastsep separate --stream``: separate audio read from a pipe (or a file/FIFO) as it arrives.

The talkers come out as the channels of one stream, in the input's container (WAV or raw PCM, see
:mod:`fastsep.stream_io`), at the input's rate unless ``--output-rate`` says otherwise, each block written and flushed
as soon as it is final. The algorithmic latency (the window, plus the streaming resamplers' look-ahead when the
input is not at the model's rate) is printed on stderr before any audio is read. Example::

    sox talk.wav -t wav -r 8000 - | fastsep separate --stream --mode backbone | sox -t wav - t1.wav remix 1
    arecord -f S16_LE -r 8000 -c 1 -t raw | fastsep separate --stream --input-format raw > talkers.raw
"""
from __future__ import annotations

import os
import sys
import time
from typing import Callable, List, Optional

import numpy as np

_READ = 1 << 14  # bytes per read: small enough that a live source's blocks are handled as they arrive


def _resampler_delay(orig_sr: int, new_sr: int) -> float:
    """Seconds a :class:`fastsep.streaming.StreamResampler` holds output back: its margin plus one period of
    input, as it emits whole periods only."""
    from ..streaming import StreamResampler

    if orig_sr == new_sr:
        return 0.0
    res = StreamResampler(orig_sr, new_sr)
    return (res.margin + res.down) / orig_sr


def run_stream(args, fail: Callable[[str], int]) -> int:
    """The ``--stream`` path of ``fastsep separate``; ``fail(text)`` reports an error and gives the exit code."""
    from ..separator import Separator
    from ..stream_io import PcmDecoder, PcmEncoder, StreamFormat, StreamFormatError, read_wav_header, sniff
    from ..streaming import StreamResampler
    from .separate import check_device, parse_output_rate, _device

    inputs = list(args.inputs) or ["-"]
    if len(inputs) != 1:
        return fail(f"--stream reads one input (a file, a FIFO, or - for stdin), got {len(inputs)}")
    if args.raw_rate is not None and args.raw_rate <= 0:
        return fail(f"--raw-rate must be a positive number of Hz, got {args.raw_rate}")
    try:
        output_rate = parse_output_rate(str(args.output_rate))
        device = check_device(_device(args.device))
        sep = Separator.from_pretrained(args.model, device=device, vocoder_precision=args.precision,
                                        combiner_precision=args.precision, match_levels=args.match_levels)
        stream = sep.stream(args.mode, args.window, args.hop, seed=args.seed, context_seconds=args.context,
                            lookahead_seconds=args.lookahead)
    except (FileNotFoundError, ValueError, TypeError, OSError) as exc:
        return fail(str(exc))
    try:
        source = sys.stdin.buffer if inputs[0] == "-" else open(inputs[0], "rb")
    except OSError as exc:
        return fail(f"cannot open {inputs[0]}: {exc.strerror or exc}")
    to_stdout = args.out in (None, "-")
    try:
        head, is_wav = sniff(source)
        if args.input_format == "wav" or (args.input_format == "auto" and is_wav):
            fmt = read_wav_header(source, head)
            head = b""
        else:
            if args.input_format == "raw" and is_wav:
                print("fastsep separate: warning: --input-format raw, but the input starts with a WAV header",
                      file=sys.stderr)
            fmt = StreamFormat(args.raw_rate or sep.sample_rate, 1, args.raw_encoding)
            is_wav = False
    except StreamFormatError as exc:
        return fail(str(exc))
    out_rate = fmt.rate if output_rate is None else (sep.sample_rate if output_rate == "model" else output_rate)
    out_fmt = StreamFormat(out_rate, sep.n_src, fmt.encoding)
    decoder, encoder = PcmDecoder(fmt), PcmEncoder(out_fmt)
    res_in = StreamResampler(fmt.rate, sep.sample_rate) if fmt.rate != sep.sample_rate else None
    res_out: List[StreamResampler] = ([StreamResampler(sep.sample_rate, out_rate) for _ in range(sep.n_src)]
                                      if out_rate != sep.sample_rate else [])
    latency = (stream.latency_seconds + _resampler_delay(fmt.rate, sep.sample_rate)
               + _resampler_delay(sep.sample_rate, out_rate))
    print(f"fastsep separate: streaming {args.mode}, input {fmt.rate} Hz {fmt.encoding} x{fmt.channels} "
          f"({'wav' if is_wav else 'raw'}), output {sep.n_src} talkers as channels at {out_rate} Hz; algorithmic "
          f"latency {stream.latency_seconds * 1000:.0f} ms ({stream.layout} at {sep.sample_rate} Hz)"
          + (f", {latency * 1000:.0f} ms with resampling" if latency > stream.latency_seconds else ""),
          file=sys.stderr)
    try:
        sink = sys.stdout.buffer if to_stdout else open(args.out, "wb")
    except OSError as exc:
        return fail(f"cannot open {args.out}: {exc.strerror or exc}")
    frames = 0

    def write(talkers: np.ndarray) -> None:
        nonlocal frames
        if res_out:
            talkers = np.stack([r.push(t) for r, t in zip(res_out, talkers)])
        if talkers.shape[-1]:
            sink.write(encoder.encode(talkers))
            sink.flush()
            frames += talkers.shape[-1]

    read = getattr(source, "read1", source.read)  # read1: whatever a live pipe has, without waiting for a full read
    started = time.perf_counter()
    try:
        if is_wav:
            sink.write(encoder.wav_header())
        data = head
        while True:
            if data:
                samples = decoder.decode(data)
                if res_in is not None:
                    samples = res_in.push(samples)
                if samples.size:
                    write(stream.push(samples))
            data = read(_READ)
            if not data:
                break
        if res_in is not None:
            rest = res_in.finish()
            if rest.size:
                write(stream.push(rest))
        write(stream.finish())
        if res_out:
            write_tail = np.stack([r.finish() for r in res_out])
            if write_tail.shape[-1]:
                sink.write(encoder.encode(write_tail))
                frames += write_tail.shape[-1]
        sink.flush()
        if is_wav and not to_stdout and sink.seekable():  # a real file: put the real sizes in the header
            sink.seek(0)
            sink.write(encoder.wav_header(frames))
    except BrokenPipeError:  # the reader went away (e.g. `| head -c`): stop quietly, as sox does
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (ValueError, StreamFormatError) as exc:
        return fail(str(exc))
    finally:
        if not to_stdout:
            sink.close()
        if source is not sys.stdin.buffer:
            source.close()
    wall = time.perf_counter() - started
    seconds = stream.received / sep.sample_rate
    note = f"; {encoder.clipped} samples clipped" if encoder.clipped else ""
    if decoder.leftover:
        note += f"; the input ended inside a frame ({decoder.leftover} bytes dropped)"
    print(f"fastsep separate: streamed {seconds:.2f} s of audio in {wall:.2f} s (RTF {wall / max(seconds, 1e-9):.3f})"
          f"{note}", file=sys.stderr)
    return 0
