// Stand-in for the header a CUDA build of torch generates; empty is enough for a syntax-only check.
