"""The site's front door: the HTTP API (`photo-pipeline serve`) and its uploader page.

app.py builds the ASGI app; routes.py holds the endpoints (thin: they call services/); http.py
the plumbing (bearer token, request log, JSON errors, bounded bodies); schemas.py the pydantic
models; openapi.py the description; static/upload.html the page.
"""
