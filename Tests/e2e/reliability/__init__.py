"""sandboxd's reliability suite (issue 4): process lifecycle, limits, shutdown, auth, raw HTTP and a soak."""
