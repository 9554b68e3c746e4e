from bertner.cli import app

app(prog_name="bertner")
