"""Experiments that run several trainings and probe them (notebook 01's recipe sweep)."""
