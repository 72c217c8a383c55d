"""Data: the feeder as read (engineering model, names from the file, SI units), its exact
reduction, and what an envelope study computes (methods, directions, options, envelope sets)."""
