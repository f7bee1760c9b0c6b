"""voiceplane.sandbox (see DESIGN.md, Layers)."""
