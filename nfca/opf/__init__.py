"""The optimisation: the feeder in per unit, the UTOPF's constraint families (Pyomo), and the
envelope problem that assembles them with a method's objective."""
