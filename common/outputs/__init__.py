"""What runs write for people and tools: saved predictions and rendered videos."""
