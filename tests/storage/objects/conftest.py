from tests.storage.objects.moto_server import moto_fixture

# One moto_server for the session; each test uses its own bucket (MotoServer.url()).
moto = moto_fixture("session", credentials=True)
