"""Critical-step selection (ATLaS §3.2, Appendix D.1) -- being written; see issue 2."""
# ---- guard: this file shadows the standard-library module `select`.
# Python puts a script's folder first on sys.path, so from the project root `import select` (done inside
# socket, subprocess, asyncio, torch, ...) finds this file instead of the real module. When that happens we
# load the real `select` from the rest of sys.path, put it in sys.modules under its name (the import system
# returns whatever sys.modules holds once the module has run), and stop here.
if __name__ == "select":
    import importlib.machinery, importlib.util, os, sys
    _here = os.path.dirname(os.path.abspath(__file__))
    _path = [p for p in sys.path if os.path.abspath(p or os.curdir) != _here]
    _spec = importlib.machinery.PathFinder.find_spec("select", _path)
    _real = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_real)
    sys.modules["select"] = _real
else:
    pass
