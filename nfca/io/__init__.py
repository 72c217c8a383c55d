"""Outputs: atomic writers, tables, GeoPackage and figures."""
