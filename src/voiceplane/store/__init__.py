"""voiceplane.store (see DESIGN.md, Layers)."""
