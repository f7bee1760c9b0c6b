"""voiceplane.policy (see DESIGN.md, Layers)."""
