#   Tests of parley, run by `bin/parley test` through ctest.
#   The servers fixture starts a throwaway redis-server and FerretDB once;
#   tests that need them run through tests/with-servers.sh.

set (PARLEY_SERVERS_DIR ${CMAKE_BINARY_DIR}/test-servers)
set (PARLEY_WITH_SERVERS ${CMAKE_SOURCE_DIR}/tests/with-servers.sh ${PARLEY_SERVERS_DIR})

add_test (NAME servers.start COMMAND ${CMAKE_SOURCE_DIR}/tests/servers.sh start ${PARLEY_SERVERS_DIR})
set_tests_properties (servers.start PROPERTIES FIXTURES_SETUP servers)
add_test (NAME servers.stop COMMAND ${CMAKE_SOURCE_DIR}/tests/servers.sh stop ${PARLEY_SERVERS_DIR})
set_tests_properties (servers.stop PROPERTIES FIXTURES_CLEANUP servers)

#   Class selftests, one ctest test each
foreach (class pl_util pl_config pl_msg pl_drain pl_bucket pl_main pl_reply pl_peers pl_notify pl_monitor pl_histogram pl_metrics pl_stomp pl_token pl_api pl_pending pl_resume pl_link pl_http pl_gate pl_handshake pl_interest pl_session pl_wsclient pl_connection pl_unread pl_presence pl_router pl_rooms pl_floors pl_bridge pl_streams)
    add_test (NAME selftest.${class} COMMAND parley-selftest ${class})
    set_tests_properties (selftest.${class} PROPERTIES TIMEOUT 120)
endforeach ()
foreach (class pl_store pl_persistence pl_pipeline)
    add_test (NAME selftest.${class} COMMAND ${PARLEY_WITH_SERVERS} $<TARGET_FILE:parley-selftest> ${class})
    set_tests_properties (selftest.${class} PROPERTIES FIXTURES_REQUIRED servers TIMEOUT 120)
endforeach ()

#   Issue 8: the STOMP limits of a connection actor
add_test (NAME selftest.pl_limits COMMAND parley-selftest pl_limits)
set_tests_properties (selftest.pl_limits PROPERTIES TIMEOUT 120)

#   Integration tests: the real actor processes, real Redis and FerretDB,
#   @stomp/stompjs + ws clients (tests/node)
file (GLOB PARLEY_NODE_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/node/*.test.mjs)
foreach (test_file ${PARLEY_NODE_TESTS})
    get_filename_component (test_name ${test_file} NAME_WE)
    add_test (NAME integration.${test_name}
              COMMAND ${PARLEY_WITH_SERVERS} node --test --test-reporter=spec ${test_file})
    set_tests_properties (integration.${test_name} PROPERTIES
        FIXTURES_REQUIRED servers TIMEOUT 600
        ENVIRONMENT "PARLEY_BUILD_DIR=${CMAKE_BINARY_DIR}")
endforeach ()

#   Issue 8: the load tests send faster than any person, each from one user
#   and many SENDs in flight; the STOMP limits do not apply to them
#   (attack-stomp sets its own on the command line, which wins)
foreach (test_file ${PARLEY_NODE_TESTS})
    get_filename_component (test_name ${test_file} NAME_WE)
    set_property (TEST integration.${test_name} APPEND PROPERTY ENVIRONMENT
                  "PARLEY_SEND_RATE=0" "PARLEY_MAX_IN_FLIGHT=1000000")
endforeach ()

#   systemd units: installed into a throwaway prefix, checked by systemd-analyze
add_test (NAME systemd.verify COMMAND ${CMAKE_SOURCE_DIR}/tests/systemd-verify.sh ${CMAKE_BINARY_DIR})

#   The installed example configuration is what the actors print: written
#   by `parley-connection --print-config`, regenerated and compared here
add_test (NAME config.example
          COMMAND sh -c "$<TARGET_FILE:parley-connection> --print-config | diff -u ${CMAKE_SOURCE_DIR}/systemd/parley.conf.example - && $<TARGET_FILE:parley-room-router> --config ${CMAKE_SOURCE_DIR}/systemd/parley.conf.example --print-config >/dev/null")

#   Fuzz targets (tests/fuzz): `bin/parley fuzz` builds them with clang in
#   build-fuzz/, then each runs a few seconds over its seeds. Once per
#   suite: only in the default build, not again under Release or ASan.
if (NOT PARLEY_SANITIZE AND NOT PARLEY_FUZZ AND NOT CMAKE_BUILD_TYPE STREQUAL "Release")
    add_test (NAME fuzz.build COMMAND ${CMAKE_SOURCE_DIR}/bin/parley fuzz --build-only)
    set_tests_properties (fuzz.build PROPERTIES FIXTURES_SETUP fuzz TIMEOUT 600)
    file (GLOB PARLEY_FUZZ_TESTS CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/tests/fuzz/fuzz_*.c)
    foreach (source ${PARLEY_FUZZ_TESTS})
        get_filename_component (name ${source} NAME_WE)
        string (REGEX REPLACE "^fuzz_" "" name ${name})
        add_test (NAME fuzz.${name} COMMAND ${CMAKE_SOURCE_DIR}/bin/parley fuzz --seconds 5 ${name})
        set_tests_properties (fuzz.${name} PROPERTIES FIXTURES_REQUIRED fuzz TIMEOUT 120)
    endforeach ()
endif ()

#   parley-load's own classes: WebSocket client framing, STOMP client
#   codec, latency histogram (the run against a host: load.smoke below)
add_test (NAME load.selftest COMMAND parley-load --selftest)

#   Issue 11: the benchmark, once at a tiny load against parley and
#   RabbitMQ, to prove it runs and loses nothing (figures come from
#   `bin/parley bench`, never from here). Once per suite, like the fuzzing.
if (NOT PARLEY_SANITIZE AND NOT PARLEY_FUZZ AND NOT CMAKE_BUILD_TYPE STREQUAL "Release")
    add_test (NAME bench.tiny
              COMMAND ${PARLEY_WITH_SERVERS} node ${CMAKE_SOURCE_DIR}/tests/node/bench.mjs
                      --conns 20 --room 2 --msgs 10 --rate 5 --threads 1 --target both --store-raw)
    set_tests_properties (bench.tiny PROPERTIES FIXTURES_REQUIRED servers TIMEOUT 300
        ENVIRONMENT "PARLEY_BUILD_DIR=${CMAKE_BINARY_DIR};PARLEY_SERVERS_DIR=${PARLEY_SERVERS_DIR};PARLEY_SEND_RATE=0;PARLEY_HTTP_RATE=0;PARLEY_MAX_IN_FLIGHT=1000000")
    #   parley-load against a real host, once of it under valgrind (its own
    #   Redis and store, so it needs no fixture)
    add_test (NAME load.smoke COMMAND ${CMAKE_SOURCE_DIR}/tests/load/smoke.sh ${CMAKE_BINARY_DIR})
    set_tests_properties (load.smoke PROPERTIES TIMEOUT 300)
endif ()
