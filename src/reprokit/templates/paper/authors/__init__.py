"""The authors' code (a worked example: replace it with the code of your paper).

Import a module of it as ``from authors import classifier``. Keep this file free of code:
the mutation gate mutates every module under ``authors/`` as a candidate chaff, and each one
must load on its own.
"""
