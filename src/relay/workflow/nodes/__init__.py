"""Node types, one module each; :mod:`registry` maps Dify type names onto them."""
