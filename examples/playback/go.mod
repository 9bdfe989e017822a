module edgeprof.example/playback-server

go 1.19
