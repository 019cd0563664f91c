"""Tools with their own `__main__`: each a thin shell over library functions (hh.tools.fit)."""
