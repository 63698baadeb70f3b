"""The platform's worker processes: which to run (``spec``), and the supervisor that runs them."""
