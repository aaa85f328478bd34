"""Golden-parity harness parts: each module builds upstream modules with random weights and writes
the golden data of one area. See tests/reference/README.md and make_golden.py."""
