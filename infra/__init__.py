"""Infrastructure: run folders and atomic file writes, shared by every stage.

Standard library only; imports nothing of the project (see infra/atomic.py for the rules).
"""
