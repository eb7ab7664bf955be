"""What every layer of the suite needs and nothing task-specific: atomic file writing, checkpoint reading, class
resolution, cross-rank gathering and table rendering. Imports nothing else of the suite."""
