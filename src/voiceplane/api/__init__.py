"""voiceplane.api (see DESIGN.md, Layers)."""
