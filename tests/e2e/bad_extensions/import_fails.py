"""An extension module that raises while it is imported (EXTENSIONS must exit 2)."""

raise RuntimeError("this extension cannot be imported")
