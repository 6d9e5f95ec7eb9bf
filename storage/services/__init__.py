"""Use cases: verbs over a unit of work; callers commit."""
