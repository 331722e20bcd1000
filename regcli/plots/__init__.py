"""The figures, drawn through matplotlib's object API from plain rows: each module draws what its
caller hands it and never imports its caller.
"""
