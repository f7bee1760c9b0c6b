"""voiceplane.calls (see DESIGN.md, Layers)."""
