"""Questionnaires: the YAML schema, the loader and the shipped questionnaire files."""
