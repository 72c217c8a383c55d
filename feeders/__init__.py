"""Test feeders as OpenDSS models, with the scripts that build them."""
