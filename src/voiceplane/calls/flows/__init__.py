"""IVR flows: the JSON format (:mod:`.model`) and the interpreter that runs one per call
(:mod:`.interpreter`). See docs/flows.md."""
