"""Files in and out, safely: atomic writes and run guards, allow-listed unpickling, run locks, video."""
