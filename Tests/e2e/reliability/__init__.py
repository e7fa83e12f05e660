"""sandboxd's reliability suite (issue 4): process lifecycle, limits, shutdown, auth, raw HTTP and a soak.

Run: ``SANDBOXD_BIN=.build/debug/sandboxd python3 -m pytest -q Tests/e2e/reliability`` (about 2 minutes on 2
cores; needs root for the tmpfs and PID-namespace tests, which skip otherwise). The measured figures (peak RSS
under a `yes` flood, backpressure, shutdown timings, the soak's before/after fds and RSS) are printed and merged
into ``/tmp/sandboxd-reliability-figures.json`` (``SANDBOXD_RELIABILITY_FIGURES`` overrides the path).
"""
