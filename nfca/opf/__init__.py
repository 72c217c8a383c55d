"""The optimisation: the feeder in per unit, the UTOPF's constraint families (Pyomo), and the
envelope problem that assembles them with a method's objective."""

from nfca.solver import lean_pyomo

lean_pyomo()  # before the modules below load Pyomo and scipy.sparse
