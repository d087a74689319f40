"""Checks of a whole job config before any training: each key as declared, then the rules that relate several keys."""
