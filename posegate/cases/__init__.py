"""Test cases: what a case is, the kinds of case a test asks for, and their generation from the registries."""
