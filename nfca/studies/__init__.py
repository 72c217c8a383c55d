"""Studies a planner runs: envelopes (verified), participation sweeps, dynamic envelopes over
profiles, activations, batches of feeders and their classification, model validation."""
