"""Words over a scene: region description and chat/ask over windows."""
