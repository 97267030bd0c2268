// Force-included into the sources that the io_uring and the epoll build share
// (holdfast_common in CMakeLists.txt). They are compiled once for both, so
// they must neither see Asio, whose types differ between the two builds (one
// definition for both would break the one-definition rule without a word),
// nor ask which backend this is. A source that starts to include Asio, itself
// or through a header, stops compiling with "attempt to use poisoned
// BOOST_ASIO_DETAIL_CONFIG_HPP": add it to HOLDFAST_BACKEND_SOURCES there.
#pragma once
#pragma GCC poison BOOST_ASIO_DETAIL_CONFIG_HPP BOOST_ASIO_HAS_IO_URING
