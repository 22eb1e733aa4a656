"""Fault injection against real services (issue 6): keep working, lose nothing, let no one in."""
