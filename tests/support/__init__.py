"""Helpers shared by tests of several areas (fixtures data, console and browser harnesses)."""
