"""voiceplane.callbacks (see DESIGN.md, Layers)."""
