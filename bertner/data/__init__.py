"""Reading annotated corpora and turning them into training windows.

readers (brat, conll, jsonl) -> Document -> policies (Entity -> Span) -> windows -> splits -> JSONL.
"""
