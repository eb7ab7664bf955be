import sys
from pathlib import Path

# The sixth task is a package of its own, importable as ``scenes`` (as an installed plug-in would be).
sys.path.insert(0, str(Path(__file__).resolve().parent))
