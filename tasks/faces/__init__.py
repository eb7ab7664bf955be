"""Faces on ordinary photos, shared by the face tasks: MTCNN face detection, alignment onto a canonical template,
and the ``mobilenets align`` command."""
