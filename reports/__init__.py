"""What the measuring tools write for people and other programs: Markdown, JSON, CSV and galleries."""
