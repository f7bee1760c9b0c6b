"""voiceplane.media (see DESIGN.md, Layers)."""
