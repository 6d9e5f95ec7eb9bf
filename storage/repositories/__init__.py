"""Repositories: queries over one aggregate each."""
