"""Loads the hypothesis profile for the fuzz suite: ``ci`` by default, ``HYPOTHESIS_PROFILE=storm`` for the long run."""

from hypothesis import settings

from tests.support.fuzz import active_profile, register_profiles

register_profiles()
settings.load_profile(active_profile())
