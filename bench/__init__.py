"""GPUBROKER benchmarks: `make bench` (`python -m bench`) runs every `bench/bench_*.py` module's
`main()` in turn. Each prints a table of ratios against baselines measured in the same run on the
same machine; nothing here asserts a timing."""
