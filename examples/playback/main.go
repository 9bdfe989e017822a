// playback-server: a stand-in for waggle-sensor/wes-playback-server, written for edgeprof's
// objcounter example. Same paths, port and behaviour as the real server:
//
//	/bottom/live.mp4, /top/live.mp4     the file <data>/<cam>/live.mp4 served as is
//	                                    (http.ServeFile: Accept-Ranges, Content-Type video/mp4,
//	                                    206 answers to Range requests; the file is not looped)
//	/bottom/image.jpg, /top/image.jpg   <data>/<cam>/images/*.jpg in name order, the n-th file
//	                                    (mod the count) n seconds after the server started
//
// A camera without a video gets an endless blank MJPEG stream (multipart/x-mixed-replace,
// about 30 frames/s); one without images a blank 800x600 JPEG, as the real server does.
// Every request from another container is logged with its status, so a profiled run's
// service log shows who read what (the image's own HEALTHCHECK, from loopback, is not).
package main

import (
	"bytes"
	"flag"
	"image"
	"image/jpeg"
	"log"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

var blank = func() []byte {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, image.NewRGBA(image.Rect(0, 0, 800, 600)), nil); err != nil {
		log.Fatalf("cannot encode the blank image: %v", err)
	}
	return buf.Bytes()
}()

func blankImage(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "image/jpeg")
	_, _ = w.Write(blank)
}

func blankVideo(w http.ResponseWriter, _ *http.Request) {
	mw := multipart.NewWriter(w)
	defer mw.Close()
	w.Header().Set("Content-Type", "multipart/x-mixed-replace;boundary="+mw.Boundary())
	part := textproto.MIMEHeader{"Content-Type": {"image/jpeg"}}
	for {
		pw, err := mw.CreatePart(part)
		if err != nil {
			return
		}
		if _, err := pw.Write(blank); err != nil {
			return
		}
		time.Sleep(33 * time.Millisecond)
	}
}

func video(path string) http.HandlerFunc {
	if _, err := os.Stat(path); err != nil {
		log.Printf("no video %q - serving a blank MJPEG stream", path)
		return blankVideo
	}
	return func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, path) }
}

func images(dir string, start time.Time) http.HandlerFunc {
	files, _ := filepath.Glob(filepath.Join(dir, "*.jpg"))
	if len(files) == 0 {
		log.Printf("no images in %q - serving a blank image", dir)
		return blankImage
	}
	sort.Strings(files)
	log.Printf("found %d images in %q", len(files), dir)
	return func(w http.ResponseWriter, r *http.Request) {
		n := int(time.Since(start).Seconds())
		http.ServeFile(w, r, files[n%len(files)])
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (s *statusWriter) WriteHeader(code int) { s.status = code; s.ResponseWriter.WriteHeader(code) }
func (s *statusWriter) Write(b []byte) (int, error) {
	n, err := s.ResponseWriter.Write(b)
	s.bytes += int64(n)
	return n, err
}
func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func logged(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t0 := time.Now()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(sw, r)
		if strings.HasPrefix(r.RemoteAddr, "127.0.0.1:") || strings.HasPrefix(r.RemoteAddr, "[::1]:") {
			return
		}
		rng := r.Header.Get("Range")
		if rng == "" {
			rng = "-"
		}
		log.Printf("%s %s %s range=%s status=%d bytes=%d in %s", r.RemoteAddr, r.Method,
			r.URL.Path, rng, sw.status, sw.bytes, time.Since(t0).Round(time.Millisecond))
	})
}

func main() {
	data := flag.String("data", "/data", "folder with bottom/ and top/ (live.mp4, images/*.jpg)")
	addr := flag.String("addr", ":8090", "address to listen on")
	quiet := flag.Bool("quiet", false, "do not log every request")
	flag.Parse()
	log.Printf("serving %s on %s", *data, *addr)
	start := time.Now()
	mux := http.NewServeMux()
	for _, cam := range []string{"bottom", "top"} {
		mux.HandleFunc("/"+cam+"/live.mp4", video(filepath.Join(*data, cam, "live.mp4")))
		mux.HandleFunc("/"+cam+"/image.jpg", images(filepath.Join(*data, cam, "images"), start))
	}
	var h http.Handler = mux
	if !*quiet {
		h = logged(mux)
	}
	log.Fatal(http.ListenAndServe(*addr, h))
}
