"""Fault injection: crash storms and outages against real processes on loopback (issue 5)."""
