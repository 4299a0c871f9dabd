"""Orchestration and entry points: command line, planning output, (later) launching and reports."""
