"""Where evaluations run: the serial, local process-pool and Dask executors, the worker that
builds, inherits, trains and scores one candidate (or a batched group), and the test-only fault
hooks."""
