/// The OpenAPI 3.1 description of the whole HTTP API (legacy, v1 files, processes, metrics), served at
/// `GET /openapi.json`. Kept by hand next to the handlers: a change of a path, field, status code or header there
/// changes this document in the same commit. `Tests/e2e/test_openapi.py` checks that it validates and that every
/// route is in it, and `Tests/e2e/test_fuzz_schemathesis.py` fuzzes the server against it.
public enum OpenAPIDocument {
    /// The document as served (JSON).
    public static let json = ##"""
        {
          "openapi": "3.1.0",
          "info": {
            "title": "sandboxd",
            "version": "\##(SandboxServer.version)",
            "description": "Runs commands and moves files inside an agent sandbox: the python-runtime-sandbox API of kubernetes-sigs/agent-sandbox (`/`, `/execute`, `/upload`, `/download`, `/list`, `/exists`), the sandboxd v1 files API, processes as resources, and metrics. Every GET endpoint also answers HEAD (the same status and headers, no body). An unknown path is a 404 `{\"detail\": \"Not Found\"}`; a method a path does not take is a 405 `{\"detail\": \"Method Not Allowed\"}` with `Allow`. With --token, every endpoint but `GET /` needs `Authorization: Bearer <token>`.",
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"}
          },
          "tags": [
            {"name": "legacy", "description": "The python-runtime-sandbox contract."},
            {"name": "files", "description": "The sandboxd v1 files API (errors `{\"code\", \"message\"}`)."},
            {"name": "processes", "description": "Background processes (errors `{\"code\", \"message\"}`)."},
            {"name": "observability", "description": "Metrics and this document."}
          ],
          "security": [{}, {"bearer": []}],
          "paths": {
            "/": {
              "get": {
                "operationId": "root",
                "tags": ["legacy"],
                "summary": "Liveness (the reference's health check); never needs a token.",
                "security": [],
                "responses": {
                  "200": {
                    "description": "Active.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RootStatus"}}}
                  }
                }
              }
            },
            "/execute": {
              "post": {
                "operationId": "execute",
                "tags": ["legacy"],
                "summary": "Run a command and answer when it has exited and its output is drained.",
                "requestBody": {
                  "required": true,
                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ExecuteRequest"}}}
                },
                "responses": {
                  "200": {
                    "description": "The command ran, or could not start (then `exit_code` 1, 126 or 127 and `stderr` says why).",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ExecuteResult"}}}
                  },
                  "400": {"$ref": "#/components/responses/BodyNotText"},
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "413": {"$ref": "#/components/responses/BodyTooLarge"},
                  "422": {"$ref": "#/components/responses/ValidationError"},
                  "429": {"$ref": "#/components/responses/TooManyProcesses"},
                  "503": {
                    "description": "The server shut down while the request was waiting, or the command could not be started for lack of resources (descriptors, processes, memory, a pipe or terminal; with `Retry-After`). Nothing was started then.",
                    "headers": {
                      "X-Request-Id": {"$ref": "#/components/headers/RequestId"},
                      "Retry-After": {"$ref": "#/components/headers/RetryAfter"}
                    },
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Detail"}}}
                  }
                }
              }
            },
            "/execute/stream": {
              "post": {
                "operationId": "executeStream",
                "tags": ["legacy"],
                "summary": "Run a command; its output as Server-Sent Events, one line per event, then `done`.",
                "description": "If the client goes away, the command's process tree is killed.",
                "requestBody": {
                  "required": true,
                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ExecuteRequest"}}}
                },
                "responses": {
                  "200": {
                    "description": "The event stream (each event `event: <type>\\ndata: <payload>\\n\\n`).",
                    "headers": {
                      "X-Request-Id": {"$ref": "#/components/headers/RequestId"},
                      "Cache-Control": {"schema": {"const": "no-cache"}}
                    },
                    "content": {"text/event-stream": {"schema": {"$ref": "#/components/schemas/ExecuteStreamEvent"}}}
                  },
                  "400": {"$ref": "#/components/responses/BodyNotText"},
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "413": {"$ref": "#/components/responses/BodyTooLarge"},
                  "422": {"$ref": "#/components/responses/ValidationError"},
                  "429": {"$ref": "#/components/responses/TooManyProcesses"},
                  "503": {"$ref": "#/components/responses/NoResources"}
                }
              }
            },
            "/upload": {
              "post": {
                "operationId": "upload",
                "tags": ["legacy"],
                "summary": "Upload one file (multipart part `file`), atomically.",
                "requestBody": {
                  "required": true,
                  "content": {
                    "multipart/form-data": {
                      "schema": {"$ref": "#/components/schemas/UploadRequest"},
                      "encoding": {"file": {"contentType": "application/octet-stream"}}
                    }
                  }
                },
                "responses": {
                  "200": {
                    "description": "Stored.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/UploadResult"}}}
                  },
                  "400": {
                    "description": "A filename that names no file (empty, `/`, `.`, `a/..`, a directory, too long, more than 40 symbolic links; `message`), or a malformed multipart body (`detail`).",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {
                      "application/json": {
                        "schema": {
                          "anyOf": [{"$ref": "#/components/schemas/Message"}, {"$ref": "#/components/schemas/Detail"}]
                        }
                      }
                    }
                  },
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "403": {
                    "description": "The destination is outside the root, or not writable.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Message"}}}
                  },
                  "413": {
                    "description": "Over --max-upload-bytes.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Detail"}}}
                  },
                  "422": {"$ref": "#/components/responses/ValidationError"},
                  "507": {
                    "description": "No space left on the device; nothing was stored.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Message"}}}
                  }
                }
              }
            },
            "/download/{path}": {
              "get": {
                "operationId": "download",
                "tags": ["legacy"],
                "summary": "A file's bytes, streamed from disk.",
                "parameters": [{"$ref": "#/components/parameters/LegacyPath"}],
                "responses": {
                  "200": {
                    "description": "The file.",
                    "headers": {
                      "X-Request-Id": {"$ref": "#/components/headers/RequestId"},
                      "Content-Disposition": {"$ref": "#/components/headers/ContentDisposition"}
                    },
                    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
                  },
                  "400": {"$ref": "#/components/responses/LegacyBadPath"},
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "403": {"$ref": "#/components/responses/AccessDenied"},
                  "404": {
                    "description": "Not a regular file: `{\"message\": \"File not found\"}`.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Message"}}}
                  }
                }
              }
            },
            "/list/{path}": {
              "get": {
                "operationId": "list",
                "tags": ["legacy"],
                "summary": "A directory's entries.",
                "parameters": [{"$ref": "#/components/parameters/LegacyPath"}],
                "responses": {
                  "200": {
                    "description": "The entries, sorted by name (bytewise). A symlink is described by what it points to; links that dangle, loop or lead out of the root are left out.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {
                      "application/json": {
                        "schema": {"type": "array", "items": {"$ref": "#/components/schemas/ListEntry"}}
                      }
                    }
                  },
                  "400": {"$ref": "#/components/responses/LegacyBadPath"},
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "403": {"$ref": "#/components/responses/AccessDenied"},
                  "404": {
                    "description": "Not a directory: `{\"message\": \"Path is not a directory\"}`.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Message"}}}
                  }
                }
              }
            },
            "/exists/{path}": {
              "get": {
                "operationId": "exists",
                "tags": ["legacy"],
                "summary": "Whether something exists at the path.",
                "parameters": [{"$ref": "#/components/parameters/LegacyPath"}],
                "responses": {
                  "200": {
                    "description": "The answer.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ExistsResult"}}}
                  },
                  "400": {"$ref": "#/components/responses/LegacyBadPath"},
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "403": {"$ref": "#/components/responses/AccessDenied"}
                }
              }
            },
            "/v1/files/{path}": {
              "parameters": [{"$ref": "#/components/parameters/FilePath"}],
              "get": {
                "operationId": "readFile",
                "tags": ["files"],
                "summary": "Read a file, or list a directory.",
                "parameters": [
                  {
                    "name": "Range",
                    "in": "header",
                    "description": "One byte range (`bytes=a-b`, `bytes=a-`, `bytes=-n`) gives 206; a range starting past the end gives 416; several ranges, another unit or a malformed value give the whole file.",
                    "schema": {"type": "string"},
                    "examples": {"first": {"value": "bytes=0-99"}}
                  },
                  {"name": "If-Match", "in": "header", "schema": {"type": "string"}},
                  {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}},
                  {"name": "If-Modified-Since", "in": "header", "schema": {"type": "string"}},
                  {"name": "If-Unmodified-Since", "in": "header", "schema": {"type": "string"}},
                  {"name": "If-Range", "in": "header", "schema": {"type": "string"}}
                ],
                "responses": {
                  "200": {
                    "description": "A regular file (its bytes, sent from its descriptor, with `Content-Length`), or a directory (its listing).",
                    "headers": {
                      "X-Request-Id": {"$ref": "#/components/headers/RequestId"},
                      "ETag": {"$ref": "#/components/headers/ETag"},
                      "Last-Modified": {"$ref": "#/components/headers/LastModified"},
                      "Accept-Ranges": {"$ref": "#/components/headers/AcceptRanges"}
                    },
                    "content": {
                      "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                      "application/json": {"schema": {"$ref": "#/components/schemas/DirectoryListing"}}
                    }
                  },
                  "206": {
                    "description": "One byte range of the file.",
                    "headers": {
                      "X-Request-Id": {"$ref": "#/components/headers/RequestId"},
                      "ETag": {"$ref": "#/components/headers/ETag"},
                      "Last-Modified": {"$ref": "#/components/headers/LastModified"},
                      "Accept-Ranges": {"$ref": "#/components/headers/AcceptRanges"},
                      "Content-Range": {"$ref": "#/components/headers/ContentRange"}
                    },
                    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
                  },
                  "304": {
                    "description": "`If-None-Match` or `If-Modified-Since` matched.",
                    "headers": {
                      "X-Request-Id": {"$ref": "#/components/headers/RequestId"},
                      "ETag": {"$ref": "#/components/headers/ETag"},
                      "Last-Modified": {"$ref": "#/components/headers/LastModified"}
                    }
                  },
                  "400": {
                    "description": "A FIFO, socket or device, or a path through more than 40 symbolic links (`INVALID_ARGUMENT`), a path that is not usable, or a URL that does not decode (`{\"detail\": \"Invalid path\"}`).",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {
                      "application/json": {
                        "schema": {
                          "anyOf": [
                            {
                              "allOf": [{"$ref": "#/components/schemas/Error"}],
                              "properties": {"code": {"enum": ["INVALID_ARGUMENT"]}}
                            },
                            {"$ref": "#/components/schemas/Detail"}
                          ]
                        }
                      }
                    }
                  },
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "403": {
                    "description": "Outside the root (`PERMISSION_DENIED`).",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {
                      "application/json": {
                        "schema": {
                          "allOf": [{"$ref": "#/components/schemas/Error"}],
                          "properties": {"code": {"enum": ["PERMISSION_DENIED"]}}
                        }
                      }
                    }
                  },
                  "404": {
                    "description": "Nothing at this path (`NOT_FOUND`).",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {
                      "application/json": {
                        "schema": {
                          "allOf": [{"$ref": "#/components/schemas/Error"}],
                          "properties": {"code": {"enum": ["NOT_FOUND"]}}
                        }
                      }
                    }
                  },
                  "412": {
                    "description": "`If-Match` or `If-Unmodified-Since` failed (`FAILED_PRECONDITION`).",
                    "headers": {
                      "X-Request-Id": {"$ref": "#/components/headers/RequestId"},
                      "ETag": {"$ref": "#/components/headers/ETag"},
                      "Last-Modified": {"$ref": "#/components/headers/LastModified"}
                    },
                    "content": {
                      "application/json": {
                        "schema": {
                          "allOf": [{"$ref": "#/components/schemas/Error"}],
                          "properties": {"code": {"enum": ["FAILED_PRECONDITION"]}}
                        }
                      }
                    }
                  },
                  "416": {
                    "description": "The range starts past the end, or is `bytes=-0` (`OUT_OF_RANGE`).",
                    "headers": {
                      "X-Request-Id": {"$ref": "#/components/headers/RequestId"},
                      "ETag": {"$ref": "#/components/headers/ETag"},
                      "Last-Modified": {"$ref": "#/components/headers/LastModified"},
                      "Content-Range": {"$ref": "#/components/headers/ContentRange"}
                    },
                    "content": {
                      "application/json": {
                        "schema": {
                          "allOf": [{"$ref": "#/components/schemas/Error"}],
                          "properties": {"code": {"enum": ["OUT_OF_RANGE"]}}
                        }
                      }
                    }
                  }
                }
              },
              "head": {
                "operationId": "statFile",
                "tags": ["files"],
                "summary": "The headers GET would send, without a body.",
                "parameters": [
                  {
                    "name": "Range",
                    "in": "header",
                    "description": "One byte range (`bytes=a-b`, `bytes=a-`, `bytes=-n`) gives 206; a range starting past the end gives 416; several ranges, another unit or a malformed value give the whole file.",
                    "schema": {"type": "string"},
                    "examples": {"first": {"value": "bytes=0-99"}}
                  },
                  {"name": "If-Match", "in": "header", "schema": {"type": "string"}},
                  {"name": "If-None-Match", "in": "header", "schema": {"type": "string"}},
                  {"name": "If-Modified-Since", "in": "header", "schema": {"type": "string"}},
                  {"name": "If-Unmodified-Since", "in": "header", "schema": {"type": "string"}},
                  {"name": "If-Range", "in": "header", "schema": {"type": "string"}}
                ],
                "responses": {
                  "200": {
                    "description": "A regular file (its bytes, sent from its descriptor, with `Content-Length`), or a directory (its listing). No body.",
                    "headers": {
                      "X-Request-Id": {"$ref": "#/components/headers/RequestId"},
                      "ETag": {"$ref": "#/components/headers/ETag"},
                      "Last-Modified": {"$ref": "#/components/headers/LastModified"},
                      "Accept-Ranges": {"$ref": "#/components/headers/AcceptRanges"}
                    }
                  },
                  "206": {
                    "description": "One byte range of the file.",
                    "headers": {
                      "X-Request-Id": {"$ref": "#/components/headers/RequestId"},
                      "ETag": {"$ref": "#/components/headers/ETag"},
                      "Last-Modified": {"$ref": "#/components/headers/LastModified"},
                      "Accept-Ranges": {"$ref": "#/components/headers/AcceptRanges"},
                      "Content-Range": {"$ref": "#/components/headers/ContentRange"}
                    }
                  },
                  "304": {
                    "description": "`If-None-Match` or `If-Modified-Since` matched.",
                    "headers": {
                      "X-Request-Id": {"$ref": "#/components/headers/RequestId"},
                      "ETag": {"$ref": "#/components/headers/ETag"},
                      "Last-Modified": {"$ref": "#/components/headers/LastModified"}
                    }
                  },
                  "400": {
                    "description": "Not a regular file or directory, a path through more than 40 symbolic links, or a path or URL that is not usable.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}}
                  },
                  "401": {
                    "description": "Not authenticated.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}}
                  },
                  "403": {
                    "description": "Outside the root.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}}
                  },
                  "404": {
                    "description": "Nothing at this path.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}}
                  },
                  "412": {
                    "description": "`If-Match` or `If-Unmodified-Since` failed.",
                    "headers": {
                      "X-Request-Id": {"$ref": "#/components/headers/RequestId"},
                      "ETag": {"$ref": "#/components/headers/ETag"},
                      "Last-Modified": {"$ref": "#/components/headers/LastModified"}
                    }
                  },
                  "416": {
                    "description": "The range is not satisfiable.",
                    "headers": {
                      "X-Request-Id": {"$ref": "#/components/headers/RequestId"},
                      "ETag": {"$ref": "#/components/headers/ETag"},
                      "Last-Modified": {"$ref": "#/components/headers/LastModified"},
                      "Content-Range": {"$ref": "#/components/headers/ContentRange"}
                    }
                  }
                }
              },
              "put": {
                "operationId": "writeFile",
                "tags": ["files"],
                "summary": "Write a file atomically (temporary file + rename; parents created).",
                "description": "The mode, the path and the destination are checked before the body is read.",
                "parameters": [
                  {
                    "name": "mode",
                    "in": "query",
                    "description": "Permission bits, applied exactly; default 0644.",
                    "schema": {"type": "string", "pattern": "^0[0-7]{3}$"},
                    "examples": {"executable": {"value": "0755"}}
                  }
                ],
                "requestBody": {
                  "description": "No body writes an empty file.",
                  "content": {
                    "application/octet-stream": {
                      "schema": {
                        "type": "string",
                        "format": "binary",
                        "description": "Any content type but multipart/form-data is stored as is."
                      }
                    },
                    "multipart/form-data": {
                      "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                          "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "The content; its filename is ignored, other parts are skipped."
                          }
                        }
                      },
                      "encoding": {"file": {"contentType": "application/octet-stream"}}
                    }
                  }
                },
                "responses": {
                  "204": {
                    "description": "Written.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}}
                  },
                  "400": {
                    "description": "A bad `mode`, a destination that is a directory (or the root, or below a file), a path through more than 40 symbolic links, a name longer than 255 bytes or a file deeper than `PATH_MAX`, a multipart body without a `file` part or malformed (`INVALID_ARGUMENT`); or a URL that does not decode (`{\"detail\": \"Invalid path\"}`).",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {
                      "application/json": {
                        "schema": {
                          "anyOf": [
                            {
                              "allOf": [{"$ref": "#/components/schemas/Error"}],
                              "properties": {"code": {"enum": ["INVALID_ARGUMENT"]}}
                            },
                            {"$ref": "#/components/schemas/Detail"}
                          ]
                        }
                      }
                    }
                  },
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "403": {
                    "description": "Outside the root, or not writable (`PERMISSION_DENIED`).",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {
                      "application/json": {
                        "schema": {
                          "allOf": [{"$ref": "#/components/schemas/Error"}],
                          "properties": {"code": {"enum": ["PERMISSION_DENIED"]}}
                        }
                      }
                    }
                  },
                  "404": {
                    "description": "A parent directory vanished while writing (`NOT_FOUND`).",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {
                      "application/json": {
                        "schema": {
                          "allOf": [{"$ref": "#/components/schemas/Error"}],
                          "properties": {"code": {"enum": ["NOT_FOUND"]}}
                        }
                      }
                    }
                  },
                  "413": {
                    "description": "Over --max-upload-bytes.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Detail"}}}
                  },
                  "507": {
                    "description": "No space left on the device (`RESOURCE_EXHAUSTED`); nothing was stored.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {
                      "application/json": {
                        "schema": {
                          "allOf": [{"$ref": "#/components/schemas/Error"}],
                          "properties": {"code": {"enum": ["RESOURCE_EXHAUSTED"]}}
                        }
                      }
                    }
                  }
                }
              },
              "delete": {
                "operationId": "deleteFile",
                "tags": ["files"],
                "summary": "Remove a file, or a directory (non-empty ones need `recursive`). Symlinks are never followed inside a recursive removal.",
                "parameters": [
                  {
                    "name": "recursive",
                    "in": "query",
                    "description": "Go's booleans. With `true` the root's contents are removed and it stays.",
                    "schema": {
                      "type": "string",
                      "enum": ["", "1", "t", "T", "true", "TRUE", "True", "0", "f", "F", "false", "FALSE", "False"]
                    }
                  }
                ],
                "responses": {
                  "204": {
                    "description": "Removed.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}}
                  },
                  "400": {
                    "description": "`recursive` is not a boolean, or the path is not usable or passes through more than 40 symbolic links (`INVALID_ARGUMENT`); or a URL that does not decode (`{\"detail\": \"Invalid path\"}`).",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {
                      "application/json": {
                        "schema": {
                          "anyOf": [
                            {
                              "allOf": [{"$ref": "#/components/schemas/Error"}],
                              "properties": {"code": {"enum": ["INVALID_ARGUMENT"]}}
                            },
                            {"$ref": "#/components/schemas/Detail"}
                          ]
                        }
                      }
                    }
                  },
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "403": {
                    "description": "Outside the root (`PERMISSION_DENIED`).",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {
                      "application/json": {
                        "schema": {
                          "allOf": [{"$ref": "#/components/schemas/Error"}],
                          "properties": {"code": {"enum": ["PERMISSION_DENIED"]}}
                        }
                      }
                    }
                  },
                  "404": {
                    "description": "Nothing at this path (`NOT_FOUND`).",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {
                      "application/json": {
                        "schema": {
                          "allOf": [{"$ref": "#/components/schemas/Error"}],
                          "properties": {"code": {"enum": ["NOT_FOUND"]}}
                        }
                      }
                    }
                  },
                  "409": {
                    "description": "A non-empty directory without `recursive`, or the root without it (`CONFLICT`).",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {
                      "application/json": {
                        "schema": {
                          "allOf": [{"$ref": "#/components/schemas/Error"}],
                          "properties": {"code": {"enum": ["CONFLICT"]}}
                        }
                      }
                    }
                  }
                }
              }
            },
            "/v1/health": {
              "get": {
                "operationId": "health",
                "tags": ["files"],
                "summary": "Readiness.",
                "responses": {
                  "200": {
                    "description": "Serving.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}
                  },
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "503": {
                    "description": "Shutting down (`UNAVAILABLE`).",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {
                      "application/json": {
                        "schema": {
                          "allOf": [{"$ref": "#/components/schemas/Error"}],
                          "properties": {"code": {"enum": ["UNAVAILABLE"]}}
                        }
                      }
                    }
                  }
                }
              }
            },
            "/v1/metadata": {
              "get": {
                "operationId": "metadata",
                "tags": ["files"],
                "summary": "The sandbox's metadata variables, read once at start.",
                "responses": {
                  "200": {
                    "description": "The variables.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Metadata"}}}
                  },
                  "401": {"$ref": "#/components/responses/Unauthorized"}
                }
              }
            },
            "/v1/processes": {
              "post": {
                "operationId": "startProcess",
                "tags": ["processes"],
                "summary": "Start a process in the background.",
                "description": "A process that could not be started is an error (404, 403, 429, 503), never a process: no id is handed out and nothing is listed.",
                "requestBody": {
                  "required": true,
                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/StartProcessRequest"}}}
                },
                "responses": {
                  "201": {
                    "description": "Started.",
                    "headers": {
                      "X-Request-Id": {"$ref": "#/components/headers/RequestId"},
                      "Location": {"$ref": "#/components/headers/Location"}
                    },
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/StartedProcess"}}}
                  },
                  "400": {
                    "description": "The body is not valid, or `cwd` is not a directory in the root or passes through more than 40 symbolic links (`INVALID_ARGUMENT`).",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {
                      "application/json": {
                        "schema": {
                          "allOf": [{"$ref": "#/components/schemas/Error"}],
                          "properties": {"code": {"enum": ["INVALID_ARGUMENT"]}}
                        }
                      }
                    }
                  },
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "403": {
                    "description": "`cwd` is outside the root, or the program is not executable (`PERMISSION_DENIED`).",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {
                      "application/json": {
                        "schema": {
                          "allOf": [{"$ref": "#/components/schemas/Error"}],
                          "properties": {"code": {"enum": ["PERMISSION_DENIED"]}}
                        }
                      }
                    }
                  },
                  "404": {
                    "description": "The program does not exist (`NOT_FOUND`).",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {
                      "application/json": {
                        "schema": {
                          "allOf": [{"$ref": "#/components/schemas/Error"}],
                          "properties": {"code": {"enum": ["NOT_FOUND"]}}
                        }
                      }
                    }
                  },
                  "413": {"$ref": "#/components/responses/BodyTooLarge"},
                  "429": {
                    "description": "`--max-processes` commands are running (`RESOURCE_EXHAUSTED`); nothing was started.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {
                      "application/json": {
                        "schema": {
                          "allOf": [{"$ref": "#/components/schemas/Error"}],
                          "properties": {"code": {"enum": ["RESOURCE_EXHAUSTED"]}}
                        }
                      }
                    }
                  },
                  "500": {
                    "description": "The process could not be started for another reason (`INTERNAL`).",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {
                      "application/json": {
                        "schema": {
                          "allOf": [{"$ref": "#/components/schemas/Error"}],
                          "properties": {"code": {"enum": ["INTERNAL"]}}
                        }
                      }
                    }
                  },
                  "503": {
                    "description": "Shutting down (`UNAVAILABLE`), or no resources to start the process (`RESOURCE_EXHAUSTED`, with `Retry-After`); nothing was started.",
                    "headers": {
                      "X-Request-Id": {"$ref": "#/components/headers/RequestId"},
                      "Retry-After": {"$ref": "#/components/headers/RetryAfter"}
                    },
                    "content": {
                      "application/json": {
                        "schema": {
                          "allOf": [{"$ref": "#/components/schemas/Error"}],
                          "properties": {"code": {"enum": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"]}}
                        }
                      }
                    }
                  }
                }
              },
              "get": {
                "operationId": "listProcesses",
                "tags": ["processes"],
                "summary": "Running and recently finished processes.",
                "responses": {
                  "200": {
                    "description": "The processes.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ProcessList"}}}
                  },
                  "401": {"$ref": "#/components/responses/Unauthorized"}
                }
              }
            },
            "/v1/processes/{id}": {
              "parameters": [{"$ref": "#/components/parameters/ProcessID"}],
              "get": {
                "operationId": "getProcess",
                "tags": ["processes"],
                "summary": "One process.",
                "responses": {
                  "200": {
                    "description": "The process.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Process"}}}
                  },
                  "400": {"$ref": "#/components/responses/InvalidURL"},
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "404": {"$ref": "#/components/responses/ProcessNotFound"},
                  "405": {"$ref": "#/components/responses/ProcessMethodNotAllowed"}
                }
              },
              "delete": {
                "operationId": "deleteProcess",
                "tags": ["processes"],
                "summary": "Kill the process tree and forget the process.",
                "responses": {
                  "204": {
                    "description": "Killed and forgotten.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}}
                  },
                  "400": {"$ref": "#/components/responses/InvalidURL"},
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "404": {"$ref": "#/components/responses/ProcessNotFound"},
                  "405": {"$ref": "#/components/responses/ProcessMethodNotAllowed"}
                }
              }
            },
            "/v1/processes/{id}/events": {
              "parameters": [{"$ref": "#/components/parameters/ProcessID"}],
              "get": {
                "operationId": "processEvents",
                "tags": ["processes"],
                "summary": "The process's output as Server-Sent Events: what is kept, then live output, then `exit`.",
                "description": "Several clients may attach at once. A late client first gets the kept output (a ring buffer, 1 MiB by default).",
                "parameters": [
                  {
                    "name": "encoding",
                    "in": "query",
                    "description": "`text` (default; invalid UTF-8 as U+FFFD) or `base64` (the raw bytes).",
                    "schema": {"type": "string", "enum": ["", "text", "utf-8", "base64"]}
                  },
                  {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "description": "Resume after this event (while it is still buffered).",
                    "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"}
                  },
                  {
                    "name": "last_event_id",
                    "in": "query",
                    "description": "The same as `Last-Event-ID`, for clients that cannot set headers; the header wins.",
                    "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"}
                  }
                ],
                "responses": {
                  "200": {
                    "description": "The event stream; it ends after `exit` (or `error`). Resumed after the `exit` event, it is empty.",
                    "headers": {
                      "X-Request-Id": {"$ref": "#/components/headers/RequestId"},
                      "Cache-Control": {"schema": {"const": "no-cache"}}
                    },
                    "content": {"text/event-stream": {"schema": {"$ref": "#/components/schemas/ProcessEvent"}}}
                  },
                  "400": {
                    "description": "A bad `encoding`, or a Last-Event-ID that is no event id of this process (`INVALID_ARGUMENT`); or a URL that does not decode (`{\"detail\": \"Invalid path\"}`).",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {
                      "application/json": {
                        "schema": {
                          "anyOf": [
                            {
                              "allOf": [{"$ref": "#/components/schemas/Error"}],
                              "properties": {"code": {"enum": ["INVALID_ARGUMENT"]}}
                            },
                            {"$ref": "#/components/schemas/Detail"}
                          ]
                        }
                      }
                    }
                  },
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "404": {"$ref": "#/components/responses/ProcessNotFound"},
                  "405": {"$ref": "#/components/responses/ProcessMethodNotAllowed"}
                }
              }
            },
            "/v1/processes/{id}/wait": {
              "parameters": [{"$ref": "#/components/parameters/ProcessID"}],
              "get": {
                "operationId": "waitProcess",
                "tags": ["processes"],
                "summary": "The process once it has exited, or as it is when `timeout` passes (200 either way; `status` tells which). No thread waits.",
                "parameters": [
                  {
                    "name": "timeout",
                    "in": "query",
                    "description": "Seconds to wait, default 30, at most 3600 (larger values are capped).",
                    "schema": {"type": "number", "minimum": 0}
                  }
                ],
                "responses": {
                  "200": {
                    "description": "The process.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Process"}}}
                  },
                  "400": {
                    "description": "`timeout` is not a number of seconds, 0 or more (`INVALID_ARGUMENT`); or a URL that does not decode (`{\"detail\": \"Invalid path\"}`).",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {
                      "application/json": {
                        "schema": {
                          "anyOf": [
                            {
                              "allOf": [{"$ref": "#/components/schemas/Error"}],
                              "properties": {"code": {"enum": ["INVALID_ARGUMENT"]}}
                            },
                            {"$ref": "#/components/schemas/Detail"}
                          ]
                        }
                      }
                    }
                  },
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "404": {"$ref": "#/components/responses/ProcessNotFound"},
                  "405": {"$ref": "#/components/responses/ProcessMethodNotAllowed"},
                  "503": {"$ref": "#/components/responses/ShuttingDown"}
                }
              }
            },
            "/v1/processes/{id}/stdin": {
              "parameters": [{"$ref": "#/components/parameters/ProcessID"}],
              "post": {
                "operationId": "writeStdin",
                "tags": ["processes"],
                "summary": "Write the body to the process's stdin (delivered whole and in order).",
                "description": "The process and its stdin are checked before the body is read.",
                "requestBody": {
                  "required": true,
                  "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
                },
                "responses": {
                  "204": {
                    "description": "Handed to the process.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}}
                  },
                  "400": {"$ref": "#/components/responses/InvalidURL"},
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "404": {"$ref": "#/components/responses/ProcessNotFound"},
                  "405": {"$ref": "#/components/responses/ProcessMethodNotAllowed"},
                  "409": {"$ref": "#/components/responses/ProcessConflict"},
                  "413": {
                    "description": "The body is over 1 MiB (`RESOURCE_EXHAUSTED`).",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {
                      "application/json": {
                        "schema": {
                          "allOf": [{"$ref": "#/components/schemas/Error"}],
                          "properties": {"code": {"enum": ["RESOURCE_EXHAUSTED"]}}
                        }
                      }
                    }
                  },
                  "429": {
                    "description": "The process is not reading its stdin and too many bytes wait (`RESOURCE_EXHAUSTED`).",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {
                      "application/json": {
                        "schema": {
                          "allOf": [{"$ref": "#/components/schemas/Error"}],
                          "properties": {"code": {"enum": ["RESOURCE_EXHAUSTED"]}}
                        }
                      }
                    }
                  }
                }
              },
              "delete": {
                "operationId": "closeStdin",
                "tags": ["processes"],
                "summary": "Close stdin (EOF once what was written is read; Ctrl-D on a terminal).",
                "responses": {
                  "204": {
                    "description": "Closed.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}}
                  },
                  "400": {"$ref": "#/components/responses/InvalidURL"},
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "404": {"$ref": "#/components/responses/ProcessNotFound"},
                  "405": {"$ref": "#/components/responses/ProcessMethodNotAllowed"},
                  "409": {"$ref": "#/components/responses/ProcessConflict"}
                }
              }
            },
            "/v1/processes/{id}/signal": {
              "parameters": [{"$ref": "#/components/parameters/ProcessID"}],
              "post": {
                "operationId": "signalProcess",
                "tags": ["processes"],
                "summary": "Send a signal to the process group.",
                "requestBody": {
                  "required": true,
                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SignalRequest"}}}
                },
                "responses": {
                  "204": {
                    "description": "Sent.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}}
                  },
                  "400": {
                    "description": "Not `{\"signal\": NAME}` with a listed NAME (`INVALID_ARGUMENT`); or a URL that does not decode (`{\"detail\": \"Invalid path\"}`).",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {
                      "application/json": {
                        "schema": {
                          "anyOf": [
                            {
                              "allOf": [{"$ref": "#/components/schemas/Error"}],
                              "properties": {"code": {"enum": ["INVALID_ARGUMENT"]}}
                            },
                            {"$ref": "#/components/schemas/Detail"}
                          ]
                        }
                      }
                    }
                  },
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "404": {"$ref": "#/components/responses/ProcessNotFound"},
                  "405": {"$ref": "#/components/responses/ProcessMethodNotAllowed"},
                  "409": {"$ref": "#/components/responses/ProcessConflict"},
                  "413": {
                    "description": "The body is over 64 KiB.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Detail"}}}
                  }
                }
              }
            },
            "/v1/processes/{id}/resize": {
              "parameters": [{"$ref": "#/components/parameters/ProcessID"}],
              "post": {
                "operationId": "resizeProcess",
                "tags": ["processes"],
                "summary": "Resize the process's pty (the kernel sends SIGWINCH).",
                "requestBody": {
                  "required": true,
                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/TerminalSize"}}}
                },
                "responses": {
                  "204": {
                    "description": "Resized.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}}
                  },
                  "400": {
                    "description": "Not `{\"cols\": N, \"rows\": N}` with whole numbers from 1 to 65535 (`INVALID_ARGUMENT`); or a URL that does not decode (`{\"detail\": \"Invalid path\"}`).",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {
                      "application/json": {
                        "schema": {
                          "anyOf": [
                            {
                              "allOf": [{"$ref": "#/components/schemas/Error"}],
                              "properties": {"code": {"enum": ["INVALID_ARGUMENT"]}}
                            },
                            {"$ref": "#/components/schemas/Detail"}
                          ]
                        }
                      }
                    }
                  },
                  "401": {"$ref": "#/components/responses/Unauthorized"},
                  "404": {"$ref": "#/components/responses/ProcessNotFound"},
                  "405": {"$ref": "#/components/responses/ProcessMethodNotAllowed"},
                  "409": {"$ref": "#/components/responses/ProcessConflict"},
                  "413": {
                    "description": "The body is over 64 KiB.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Detail"}}}
                  }
                }
              }
            },
            "/metrics": {
              "get": {
                "operationId": "metrics",
                "tags": ["observability"],
                "summary": "Prometheus text format: requests by route and status, request durations, running commands, bytes up and down, timed-out commands.",
                "responses": {
                  "200": {
                    "description": "The metrics.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {"text/plain": {"schema": {"type": "string"}}}
                  },
                  "401": {"$ref": "#/components/responses/Unauthorized"}
                }
              }
            },
            "/openapi.json": {
              "get": {
                "operationId": "openapi",
                "tags": ["observability"],
                "summary": "This document.",
                "responses": {
                  "200": {
                    "description": "The OpenAPI document.",
                    "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                    "content": {"application/json": {"schema": {"type": "object", "required": ["openapi", "paths"]}}}
                  },
                  "401": {"$ref": "#/components/responses/Unauthorized"}
                }
              }
            }
          },
          "components": {
            "schemas": {
              "Detail": {
                "type": "object",
                "description": "FastAPI's shape for errors the framework answers (unknown path, wrong method, bad URL, too large, not authenticated).",
                "required": ["detail"],
                "properties": {"detail": {"type": "string"}}
              },
              "Message": {
                "type": "object",
                "description": "The legacy file endpoints' error shape.",
                "required": ["message"],
                "properties": {"message": {"type": "string"}}
              },
              "Error": {
                "type": "object",
                "description": "The v1 API's error shape: a stable machine code and a human message (which never names a host path).",
                "required": ["code", "message"],
                "properties": {
                  "code": {
                    "type": "string",
                    "enum": [
                      "INVALID_ARGUMENT",
                      "PERMISSION_DENIED",
                      "NOT_FOUND",
                      "CONFLICT",
                      "FAILED_PRECONDITION",
                      "OUT_OF_RANGE",
                      "INTERNAL",
                      "UNAVAILABLE",
                      "RESOURCE_EXHAUSTED"
                    ]
                  },
                  "message": {"type": "string"}
                }
              },
              "ValidationIssue": {
                "type": "object",
                "required": ["type", "loc", "msg"],
                "properties": {
                  "type": {"type": "string", "examples": ["missing", "string_type", "greater_than"]},
                  "loc": {"type": "array", "items": {"type": ["string", "integer"]}, "examples": [["body", "command"]]},
                  "msg": {"type": "string"},
                  "input": {"description": "The offending value (any JSON)."},
                  "ctx": {"type": "object", "description": "Details, e.g. `{\"gt\": 0}` or the JSON decoder's `error`."}
                }
              },
              "HTTPValidationError": {
                "type": "object",
                "description": "A 422 in FastAPI's (pydantic's) shape.",
                "required": ["detail"],
                "properties": {"detail": {"type": "array", "items": {"$ref": "#/components/schemas/ValidationIssue"}}}
              },
              "RootStatus": {
                "type": "object",
                "required": ["status", "message"],
                "properties": {"status": {"const": "ok"}, "message": {"const": "Sandbox Runtime is active."}}
              },
              "ExecuteRequest": {
                "type": "object",
                "required": ["command"],
                "properties": {
                  "command": {
                    "type": "string",
                    "description": "Split into argv like Python's shlex.split (quotes and backslashes; no globbing, variables or pipes); run with cwd = the sandbox root, stdin from /dev/null. Shell syntax needs an explicit `sh -c '...'`.",
                    "examples": ["echo 'hello world'"]
                  },
                  "timeout": {"$ref": "#/components/schemas/Timeout"},
                  "timeout_seconds": {
                    "$ref": "#/components/schemas/Timeout",
                    "description": "The same field as `timeout` (the name the k8s-agent-sandbox SDK sends); `timeout` wins when both are present."
                  }
                }
              },
              "Timeout": {
                "description": "Seconds, greater than 0, capped at the server's --max-timeout; absent or null means --max-timeout. A string holding a number is accepted too, as pydantic's lax mode does. Anything else is a 422.",
                "anyOf": [
                  {"type": "number", "exclusiveMinimum": 0},
                  {"type": "string", "pattern": "^[1-9][0-9]{0,2}(\\.[0-9]{1,3})?$"},
                  {"type": "null"}
                ],
                "examples": [30]
              },
              "ExecuteResult": {
                "type": "object",
                "required": ["stdout", "stderr", "exit_code", "timed_out"],
                "properties": {
                  "stdout": {"type": "string", "description": "Text; bytes that are not UTF-8 become U+FFFD."},
                  "stderr": {
                    "type": "string",
                    "description": "On timeout ends with `Command timed out after N seconds`; for a command that could not start, says why."
                  },
                  "exit_code": {
                    "type": "integer",
                    "description": "The command's own; 128 + N when killed by signal N; 124 on timeout; 1 when the command line does not parse; 127 when the program does not exist; 126 when it is not executable."
                  },
                  "timed_out": {"type": "boolean"},
                  "truncated": {
                    "const": true,
                    "description": "Present only when a stream passed --max-output-bytes and was cut (and marked)."
                  }
                }
              },
              "ExecuteStreamEvent": {
                "description": "One Server-Sent Event of /execute/stream. `stdout`/`stderr`: one line of output without its line ending (`\\n`, `\\r\\n` or `\\r`; lines over 64 KiB come in pieces). `error`: a message, e.g. the timeout, always before `done`. `done`: JSON, always the last event. `: keep-alive` comments follow 15 s of silence.",
                "oneOf": [
                  {
                    "type": "object",
                    "required": ["event", "data"],
                    "properties": {
                      "event": {"enum": ["stdout", "stderr", "error"]},
                      "data": {"type": "string", "pattern": "^[^\\r\\n]*$"}
                    }
                  },
                  {
                    "type": "object",
                    "required": ["event", "data"],
                    "properties": {
                      "event": {"const": "done"},
                      "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": {"$ref": "#/components/schemas/ExecuteDone"}
                      }
                    }
                  }
                ]
              },
              "ExecuteDone": {
                "type": "object",
                "required": ["exit_code", "timed_out"],
                "properties": {"exit_code": {"type": "integer"}, "timed_out": {"type": "boolean"}}
              },
              "UploadRequest": {
                "type": "object",
                "required": ["file"],
                "properties": {
                  "file": {
                    "type": "string",
                    "format": "binary",
                    "description": "The file; its filename is the destination relative to the root (leading slashes stripped, parents created). Streamed to a temporary file and renamed into place when complete."
                  }
                }
              },
              "UploadResult": {
                "type": "object",
                "required": ["message"],
                "properties": {
                  "message": {"type": "string", "examples": ["File 'data/input.csv' uploaded successfully."]}
                }
              },
              "ListEntry": {
                "type": "object",
                "required": ["name", "size", "type", "mod_time"],
                "properties": {
                  "name": {"type": "string"},
                  "size": {"type": "integer", "minimum": 0},
                  "type": {"enum": ["file", "directory"]},
                  "mod_time": {"type": "number", "description": "Seconds since the epoch, with a fraction."}
                }
              },
              "ExistsResult": {
                "type": "object",
                "required": ["path", "exists"],
                "properties": {
                  "path": {"type": "string", "description": "The decoded path as received."},
                  "exists": {"type": "boolean"}
                }
              },
              "DirectoryListing": {
                "type": "object",
                "required": ["path", "entries"],
                "properties": {
                  "path": {"type": "string", "pattern": "^/", "description": "The request path with a leading slash."},
                  "entries": {
                    "type": "array",
                    "description": "Sorted by name (bytewise). A symlink is described by what it points to; links that dangle, loop or lead out of the root are left out.",
                    "items": {"$ref": "#/components/schemas/DirectoryEntry"}
                  }
                }
              },
              "DirectoryEntry": {
                "type": "object",
                "required": ["name", "size", "type", "modified_at", "mode"],
                "properties": {
                  "name": {"type": "string"},
                  "size": {"type": "integer", "minimum": 0},
                  "type": {"enum": ["file", "directory"]},
                  "modified_at": {
                    "type": "string",
                    "format": "date-time",
                    "description": "RFC 3339 in UTC, in seconds.",
                    "examples": ["2026-11-28T12:00:00Z"]
                  },
                  "mode": {"type": "string", "pattern": "^0[0-7]{3}$", "examples": ["0644"]}
                }
              },
              "Health": {
                "type": "object",
                "required": ["status", "uptime_seconds"],
                "properties": {"status": {"const": "ok"}, "uptime_seconds": {"type": "integer", "minimum": 0}}
              },
              "Metadata": {
                "type": "object",
                "required": ["env"],
                "properties": {
                  "env": {
                    "type": "object",
                    "description": "Environment variables whose name starts with --metadata-prefix (default SANDBOX_), never one whose name contains TOKEN, SECRET, PASSWORD, PASSWD, CRED, KEY, AUTH, BEARER, PRIVATE or CERT (any case).",
                    "additionalProperties": {"type": "string"}
                  }
                }
              },
              "StartProcessRequest": {
                "type": "object",
                "required": ["command"],
                "if": {"required": ["shell"], "properties": {"shell": {"const": true}}},
                "then": {"properties": {"command": {"type": "string"}}},
                "properties": {
                  "command": {
                    "description": "argv as given; or a command line, run by /bin/sh -c with `shell`, else split like /execute's. `\"shell\": true` needs a string. An empty command is a 400.",
                    "anyOf": [
                      {
                        "type": "array",
                        "prefixItems": [{"type": "string", "minLength": 1}],
                        "items": {"type": "string"},
                        "minItems": 1
                      },
                      {"type": "string"}
                    ],
                    "examples": [["python3", "-i"], "echo hi"]
                  },
                  "shell": {"type": ["boolean", "null"], "default": false},
                  "cwd": {
                    "type": ["string", "null"],
                    "description": "A directory relative to the sandbox root (confined like file paths); default the root."
                  },
                  "env": {
                    "type": ["object", "null"],
                    "description": "Variables set (a string) or removed (null) over the server's environment.",
                    "additionalProperties": {"type": ["string", "null"]}
                  },
                  "stdin": {
                    "type": ["boolean", "null"],
                    "default": false,
                    "description": "Keep stdin open for POST /v1/processes/{id}/stdin; else it is /dev/null."
                  },
                  "pty": {
                    "description": "Run on a pseudo-terminal of this size (its controlling tty).",
                    "anyOf": [{"$ref": "#/components/schemas/TerminalSize"}, {"type": "null"}]
                  },
                  "timeout": {
                    "description": "Seconds; the process tree is killed when it passes. Absent or null: no limit.",
                    "anyOf": [{"type": "number", "exclusiveMinimum": 0}, {"type": "null"}]
                  }
                }
              },
              "TerminalSize": {
                "type": "object",
                "required": ["cols", "rows"],
                "properties": {
                  "cols": {"type": "integer", "minimum": 1, "maximum": 65535},
                  "rows": {"type": "integer", "minimum": 1, "maximum": 65535}
                }
              },
              "StartedProcess": {
                "type": "object",
                "required": ["id", "pid"],
                "properties": {
                  "id": {"$ref": "#/components/schemas/ProcessID"},
                  "pid": {"type": "integer", "description": "The process id of its main process."}
                }
              },
              "ProcessID": {
                "type": "string",
                "pattern": "^[0-9a-z]{8}$",
                "description": "Eight characters of [0-9a-z], random.",
                "examples": ["0k3x9a7b"]
              },
              "Process": {
                "type": "object",
                "required": [
                  "id",
                  "pid",
                  "command",
                  "status",
                  "exit_code",
                  "signal",
                  "timed_out",
                  "pty",
                  "stdin",
                  "started_at",
                  "finished_at"
                ],
                "properties": {
                  "id": {"$ref": "#/components/schemas/ProcessID"},
                  "pid": {"type": "integer"},
                  "command": {"type": "array", "items": {"type": "string"}, "description": "The argv it runs."},
                  "status": {"enum": ["running", "exited"]},
                  "exit_code": {
                    "type": ["integer", "null"],
                    "description": "null while running; 128 + N when killed by signal N; 124 on timeout."
                  },
                  "signal": {
                    "type": ["string", "null"],
                    "pattern": "^SIG[A-Z0-9]+$",
                    "description": "The signal that ended it, e.g. SIGINT."
                  },
                  "timed_out": {"type": "boolean"},
                  "pty": {"type": "boolean"},
                  "stdin": {"type": "boolean", "description": "Whether its stdin is open for writing."},
                  "started_at": {"type": "string", "format": "date-time"},
                  "finished_at": {"type": ["string", "null"], "format": "date-time"}
                }
              },
              "ProcessList": {
                "type": "object",
                "required": ["processes"],
                "properties": {
                  "processes": {
                    "type": "array",
                    "description": "Running and recently finished processes (kept for a while), oldest first.",
                    "items": {"$ref": "#/components/schemas/Process"}
                  }
                }
              },
              "ExitStatus": {
                "type": "object",
                "required": ["exit_code", "signal", "timed_out"],
                "properties": {
                  "exit_code": {"type": "integer"},
                  "signal": {"type": ["string", "null"], "pattern": "^SIG[A-Z0-9]+$"},
                  "timed_out": {"type": "boolean"}
                }
              },
              "ProcessEvent": {
                "description": "One Server-Sent Event of a process. `stdout`/`stderr`: a chunk of output as it arrived (not lines), `data` a JSON string of its text (or, with ?encoding=base64, of the base64 of its bytes), with an `id` that increases per process. `exit`: the last event. `error`: the client fell too far behind and is cut off (reconnect with Last-Event-ID). A comment says when requested events are no longer buffered.",
                "oneOf": [
                  {
                    "type": "object",
                    "required": ["event", "id", "data"],
                    "properties": {
                      "event": {"enum": ["stdout", "stderr"]},
                      "id": {"type": "string", "pattern": "^[0-9]+$"},
                      "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": {"type": "string"}
                      }
                    }
                  },
                  {
                    "type": "object",
                    "required": ["event", "id", "data"],
                    "properties": {
                      "event": {"const": "exit"},
                      "id": {"type": "string", "pattern": "^[0-9]+$"},
                      "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": {"$ref": "#/components/schemas/ExitStatus"}
                      }
                    }
                  },
                  {
                    "type": "object",
                    "required": ["event", "data"],
                    "properties": {
                      "event": {"const": "error"},
                      "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": {"$ref": "#/components/schemas/Error"}
                      }
                    }
                  }
                ]
              },
              "SignalRequest": {
                "type": "object",
                "required": ["signal"],
                "properties": {
                  "signal": {"enum": ["SIGINT", "SIGTERM", "SIGKILL", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"]}
                }
              }
            },
            "responses": {
              "Unauthorized": {
                "description": "--token is set and the request lacks `Authorization: Bearer <token>`.",
                "headers": {
                  "X-Request-Id": {"$ref": "#/components/headers/RequestId"},
                  "WWW-Authenticate": {"$ref": "#/components/headers/WWWAuthenticate"}
                },
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Detail"}}}
              },
              "LegacyBadPath": {
                "description": "The URL does not percent-decode, or decodes to a NUL byte (`{\"detail\": \"Invalid path\"}`); or the path passes through more than 40 symbolic links, a loop included (`{\"message\": \"Too many levels of symbolic links in '…'\"}`).",
                "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                "content": {
                  "application/json": {
                    "schema": {"anyOf": [{"$ref": "#/components/schemas/Detail"}, {"$ref": "#/components/schemas/Message"}]}
                  }
                }
              },
              "InvalidURL": {
                "description": "The URL does not percent-decode, or decodes to a NUL byte (`{\"detail\": \"Invalid path\"}`).",
                "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Detail"}}}
              },
              "MethodNotAllowed": {
                "description": "The path names an endpoint that does not take this method.",
                "headers": {
                  "X-Request-Id": {"$ref": "#/components/headers/RequestId"},
                  "Allow": {"$ref": "#/components/headers/Allow"}
                },
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Detail"}}}
              },
              "BodyTooLarge": {
                "description": "The JSON body is over its limit (1 MiB).",
                "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Detail"}}}
              },
              "BodyNotText": {
                "description": "The JSON body is not text in the encoding it was found to have (UTF-8, UTF-16 or UTF-32).",
                "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Detail"}}}
              },
              "ValidationError": {
                "description": "The body is not valid.",
                "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HTTPValidationError"}}}
              },
              "AccessDenied": {
                "description": "The path's real location (symlinks resolved) is outside the root: `{\"message\": \"Access denied\"}`.",
                "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Message"}}}
              },
              "ShuttingDown": {
                "description": "The server shut down while the request was waiting.",
                "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Detail"}}}
              },
              "TooManyProcesses": {
                "description": "`--max-processes` commands are running; nothing was started.",
                "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Detail"}}}
              },
              "NoResources": {
                "description": "The command could not be started for lack of resources (descriptors, processes, memory, a pipe or terminal); nothing was started. Retry after the given seconds.",
                "headers": {
                  "X-Request-Id": {"$ref": "#/components/headers/RequestId"},
                  "Retry-After": {"$ref": "#/components/headers/RetryAfter"}
                },
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Detail"}}}
              },
              "ProcessNotFound": {
                "description": "No such process (`NOT_FOUND`); or the path names no endpoint (`{\"detail\": \"Not Found\"}`, when the id holds a slash).",
                "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                "content": {
                  "application/json": {
                    "schema": {
                      "anyOf": [
                        {
                          "allOf": [{"$ref": "#/components/schemas/Error"}],
                          "properties": {"code": {"enum": ["NOT_FOUND"]}}
                        },
                        {"$ref": "#/components/schemas/Detail"}
                      ]
                    }
                  }
                }
              },
              "ProcessMethodNotAllowed": {
                "description": "Only when the id holds a slash that makes the path name another endpoint of the process.",
                "headers": {
                  "X-Request-Id": {"$ref": "#/components/headers/RequestId"},
                  "Allow": {"$ref": "#/components/headers/Allow"}
                },
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Detail"}}}
              },
              "ProcessConflict": {
                "description": "The process has exited, has no open stdin, or has no pty (`CONFLICT`).",
                "headers": {"X-Request-Id": {"$ref": "#/components/headers/RequestId"}},
                "content": {
                  "application/json": {
                    "schema": {
                      "allOf": [{"$ref": "#/components/schemas/Error"}],
                      "properties": {"code": {"enum": ["CONFLICT"]}}
                    }
                  }
                }
              }
            },
            "parameters": {
              "LegacyPath": {
                "name": "path",
                "in": "path",
                "required": true,
                "description": "The rest of the URL path, slashes included, percent-decoded exactly once (`..%2F..%2Fetc` arrives as `../../etc`; a file named `a%41` is `a%2541`), resolved against the root with leading slashes stripped.",
                "schema": {"type": "string"},
                "examples": {"e0": {"value": "data/input.csv"}, "e1": {"value": "data"}}
              },
              "FilePath": {
                "name": "path",
                "in": "path",
                "required": true,
                "description": "The rest of the URL path, slashes included, percent-decoded exactly once (`..%2F..%2Fetc` arrives as `../../etc`; a file named `a%41` is `a%2541`), resolved against the root with leading slashes stripped. Clients may send `/` as `%2F`.",
                "schema": {"type": "string"},
                "examples": {"e0": {"value": "data/input.csv"}, "e1": {"value": "data"}}
              },
              "ProcessID": {
                "name": "id",
                "in": "path",
                "required": true,
                "description": "A process id from POST /v1/processes.",
                "schema": {"$ref": "#/components/schemas/ProcessID"}
              }
            },
            "headers": {
              "RequestId": {
                "description": "The request's id, also in its log line.",
                "required": true,
                "schema": {"type": "string", "pattern": "^[0-9a-f]{1,16}$"}
              },
              "Allow": {"description": "The methods the path takes.", "required": true, "schema": {"type": "string"}},
              "RetryAfter": {
                "description": "Seconds to wait before trying again (sent when resources ran out).",
                "schema": {"type": "string", "pattern": "^[0-9]+$"}
              },
              "WWWAuthenticate": {"required": true, "schema": {"const": "Bearer"}},
              "ETag": {
                "description": "Strong: the file's modification time (ns) and size, in hex.",
                "schema": {"type": "string", "pattern": "^\"-?[0-9a-f]+-[0-9a-f]+\"$"}
              },
              "LastModified": {
                "description": "An HTTP date (IMF-fixdate).",
                "schema": {
                  "type": "string",
                  "pattern": "^[A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9]{2}:[0-9]{2}:[0-9]{2} GMT$"
                }
              },
              "AcceptRanges": {"schema": {"const": "bytes"}},
              "ContentRange": {
                "required": true,
                "schema": {"type": "string", "pattern": "^bytes ([0-9]+-[0-9]+|\\*)/[0-9]+$"}
              },
              "ContentDisposition": {
                "required": true,
                "description": "`attachment; filename=\"<path>\"`, or `attachment; filename*=utf-8''<percent-encoded>` when the path needs escaping.",
                "schema": {"type": "string", "pattern": "^attachment; filename"}
              },
              "Location": {"required": true, "schema": {"type": "string", "pattern": "^/v1/processes/[0-9a-z]{8}$"}}
            },
            "securitySchemes": {
              "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "The --token (SANDBOX_API_TOKEN) value; compared in constant time."
              }
            }
          }
        }
        """##

    private static let body = Array(json.utf8)

    /// Adds `GET /openapi.json` (HEAD too, as for every GET route).
    public static func register(in router: inout Router) {
        router.add(
            .init("GET", .exact("/openapi.json")) { _, _ in
                .response(
                    HTTPResponse(status: 200, headers: [("Content-Type", "application/json")], body: .bytes(body)))
            })
    }
}
