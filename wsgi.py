from authz import create_app

app = create_app()
